import torch, glob
# Run from the repository root: python <this file> (reads runs/cc-narrow/last.pt).
from PIL import Image
import numpy as np
from udic.train.export import load_checkpoint
torch.set_num_threads(1)
m, st = load_checkpoint("runs/cc-narrow/last.pt")
print("step", st["step"])
for i, net in enumerate(m.context.nets):
    print(i, float(net[-1].weight.abs().mean()), float(net[-1].bias.abs().mean()))
m.eval()
files = sorted(glob.glob("/work/shared/data/kodak/*.png"))[:4]
xs = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB"))).permute(2,0,1).float().div(255)[None] for f in files]
ctx = m.context
for rate in (0, 3, 5):
    tot = {}
    for label in ("ctx", "noctx"):
        m.context = ctx if label == "ctx" else None
        b = 0; p = 0
        with torch.no_grad():
            for x in xs:
                r = m(x, torch.tensor([float(rate)]))
                b += float((r.y_bits + r.z_bits).sum()) / (x.shape[2]*x.shape[3])
                p += float(10*torch.log10(1/((r.x_hat.clamp(0,1)-x)**2).mean()))
        tot[label] = (b/len(xs), p/len(xs))
    m.context = ctx
    print(rate, tot)
