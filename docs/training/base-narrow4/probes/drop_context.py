"""Drop the context nets of a channel-context checkpoint: the same transforms and
hyper-synthesis as a mean-scale hyperprior checkpoint (for LoRA training and export)."""
import sys, torch
src, dst = sys.argv[1], sys.argv[2]
state = torch.load(src, map_location="cpu", weights_only=False)
state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("context.")}
cfg = dict(state["model_config"]); cfg.pop("latent_codec", None); cfg.pop("slices", None)
state["model_config"] = cfg
for key in ("opt", "aux_opt"):
    state.pop(key, None)
torch.save(state, dst)
print("wrote", dst, cfg)
