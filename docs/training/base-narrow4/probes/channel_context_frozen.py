import torch, glob, time, sys
from PIL import Image
import numpy as np
from udic.train.export import load_checkpoint
from udic.train.data import CropDataset
torch.set_num_threads(1)
m, st = load_checkpoint("runs/cc-narrow/last.pt")
lr = float(sys.argv[1]); steps = int(sys.argv[2])
for n, p in m.named_parameters():
    p.requires_grad_(n.startswith("context."))
params = [p for p in m.context.parameters()]
opt = torch.optim.Adam(params, lr=lr)
data = CropDataset(__import__("pathlib").Path("/work/shared/data/train"))
files = sorted(glob.glob("/work/shared/data/kodak/*.png"))[:3]
xs = [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2,0,1).float().div(255)[None] for f in files]
def ev():
    m.eval(); out = []
    with torch.no_grad():
        for rate in (1, 3, 5):
            b = 0
            for x in xs:
                r = m(x, torch.tensor([float(rate)]))
                b += float(r.y_bits.sum()) / (x.shape[2]*x.shape[3])
            out.append(round(b / len(xs), 4))
    m.train(); return out
print("start", ev(), flush=True)
lams = torch.tensor(m.config.lambdas)
t0 = time.time()
for step in range(steps):
    x = data.batch(seed=99, step=step, batch_size=8, crop=128)
    rate = torch.randint(0, 6, (8,))
    r = m(x, rate.float())
    loss = ((r.y_bits + r.z_bits) / (128*128)).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    if (step + 1) % 100 == 0:
        print(step + 1, f"{time.time()-t0:.0f}s", ev(), flush=True)
