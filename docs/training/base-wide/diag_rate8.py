import torch, math
from udic.train.export import load_checkpoint
from udic.train.data import load_eval_images, default_data_root
from udic.models import gaussian_likelihood, LOG_SCALE_MIN, LOG_SCALE_MAX
torch.set_num_threads(1)
m, st = load_checkpoint("runs/base-wide/last.pt"); m.eval()
x = load_eval_images(default_data_root() / "kodak")[1]
M0 = 128
with torch.no_grad():
  for r in (5, 8):
    g, ig = m.gains(torch.tensor([float(r)]))
    y = m.g_a(x) * g[:, :, None, None]
    z = m.h_a(y); z_hat = torch.round(z)
    p = m.h_s(z_hat); ls, mu = p.chunk(2, 1)
    ls = ls.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX); s = ls.exp()
    yq = torch.round(y - mu) + mu
    lik = gaussian_likelihood(yq - mu, s)
    bits = -torch.log2(lik)
    px = x.shape[-1] * x.shape[-2]
    # ideal bits if scale = actual |residual| spread per channel
    res = (yq - mu)
    print(f"rate {r}: bpp old {bits[:, :M0].sum()/px:.3f} new {bits[:, M0:].sum()/px:.3f}")
    for a, b in ((0, 32), (32, 128), (128, 192), (192, 384)):
        rs = res[:, a:b]; ss = s[:, a:b]
        nz = (torch.round(y[:, a:b] - mu[:, a:b]) != 0).float().mean()
        print(f"  ch {a}-{b}: bits/coef {bits[:, a:b].mean():.2f} |res| rms {rs.pow(2).mean().sqrt():.2f} pred scale rms {ss.pow(2).mean().sqrt():.2f} nonzero {nz:.2f}")
    xh = m.g_s(yq * ig[:, :, None, None]).clamp(0, 1)
    lin = m.g_s.linear(yq * ig[:, :, None, None]).clamp(0, 1)
    ps = lambda a: -10 * math.log10(float(((torch.round(a * 255) / 255 - x) ** 2).mean()))
    print(f"  psnr full {ps(xh):.2f} linear-only {ps(lin):.2f}")
