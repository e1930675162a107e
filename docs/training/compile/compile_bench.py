"""One training step of the packaged recipe's model, eager or compiled: python compile_bench.py eager|default (docs/training.md)."""
import time, sys, torch
torch.set_num_threads(1)
from udic.models import UdicModel, ModelConfig
torch.manual_seed(0)
cfg = ModelConfig(N=64, M=128, lambdas=(0.00035,0.00094,0.00251,0.00673,0.018,0.0483))
def make():
    torch.manual_seed(0)
    m = UdicModel(cfg).to(memory_format=torch.channels_last)
    return m
lam = torch.tensor(cfg.lambdas)
x = torch.rand(8, 3, 128, 128).contiguous(memory_format=torch.channels_last)
rate = torch.randint(6, (8,))
def step(net, model, opt):
    res = net(x, rate.float())
    bpp = (res.y_bits + res.z_bits) / (128 * 128)
    mse = ((res.x_hat - x) ** 2).flatten(1).mean(1)
    loss = (bpp + lam[rate] * 255.0**2 * mse).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss)
mode = sys.argv[1]
model = make()
opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.endswith('quantiles')], lr=1e-4)
net = model
if mode != 'eager':
    net = torch.compile(model, mode=None if mode == 'default' else mode)
t = time.perf_counter(); step(net, model, opt); print(mode, 'first step', round(time.perf_counter() - t, 1), 's', flush=True)
for _ in range(2): step(net, model, opt)
ts = []
for _ in range(8):
    t = time.perf_counter(); step(net, model, opt); ts.append(time.perf_counter() - t)
ts.sort(); print(mode, 'median step', round(ts[len(ts)//2], 3), 's', flush=True)
