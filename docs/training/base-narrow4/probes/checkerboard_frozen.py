"""Probe: how many bits a checkerboard spatial context would save at fixed transforms."""
import torch, glob, time, sys
from PIL import Image
import numpy as np
from torch import nn
from udic.train.export import load_checkpoint
from udic.train.data import CropDataset
from udic.models import ste_round, lower_bound, LOG_SCALE_MIN, LOG_SCALE_MAX, gaussian_likelihood
from pathlib import Path
torch.set_num_threads(1)
m, st = load_checkpoint("runs/cc-narrow/last.pt")
m.context = None
for p in m.parameters(): p.requires_grad_(False)
M = m.config.M
net = nn.Sequential(nn.Conv2d(3 * M, 128, 5, padding=2), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 2 * M, 3, padding=1))
nn.init.zeros_(net[-1].weight); nn.init.zeros_(net[-1].bias)
opt = torch.optim.Adam(net.parameters(), lr=float(sys.argv[1]))
def bits(x, rate, train):
    gain, inv = m.gains(rate); gain = gain[:, :, None, None]
    with torch.no_grad():
        y = m.g_a(x) * gain
        z = m.h_a(y); zh = torch.round(z)
        params = m.h_s(zh).float()
    ls, mu = params.chunk(2, 1)
    H, W = y.shape[2:]
    ii, jj = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    anchor = ((ii + jj) % 2 == 0).float()[None, None]
    yh_anchor = (torch.round(y - mu) + mu) * anchor
    d = net(torch.cat([params, yh_anchor], 1))
    ls2 = ls + d[:, :M] * (1 - anchor); mu2 = mu + d[:, M:] * (1 - anchor)
    ls2 = lower_bound(ls2, LOG_SCALE_MIN).clamp_max(LOG_SCALE_MAX)
    yn = y + torch.empty_like(y).uniform_(-0.5, 0.5) if train else torch.round(y - mu2) + mu2
    return -torch.log2(gaussian_likelihood(yn - mu2, ls2.exp())).flatten(1).sum(1) / (x.shape[2] * x.shape[3])
data = CropDataset(Path("/work/shared/data/train"))
files = sorted(glob.glob("/work/shared/data/kodak/*.png"))[:3]
xs = [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2,0,1).float().div(255)[None] for f in files]
def ev():
    with torch.no_grad():
        return [round(sum(float(bits(x, torch.tensor([float(r)]), False)) for x in xs) / len(xs), 4) for r in (1, 3, 5)]
print("start", ev(), flush=True)
t0 = time.time()
for step in range(int(sys.argv[2])):
    x = data.batch(seed=98, step=step, batch_size=8, crop=128)
    loss = bits(x, torch.randint(0, 6, (8,)).float(), True).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    if (step + 1) % 100 == 0:
        print(step + 1, f"{time.time()-t0:.0f}s", ev(), flush=True)
