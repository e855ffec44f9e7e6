# Switches for BatchNorm statistics (tasks/engine/precise_bn.py). Lists replace lists when configs
# merge, so this file only defines the hook dicts; a config turns one on by appending it to the
# custom_hooks it inherits:
#
#   _base_ = ['./unet_effb4_medical.py', './_base_/precise_bn.py']
#   custom_hooks = [*_base_.custom_hooks, _base_.precise_bn_hook]
#
# precise_bn_hook: before every validation and checkpoint of training, recompute every BN's
# running mean/var over num_iters training batches with the current (with EMA: the EMA) weights.
# 20 batches is enough to remove the lag but leaves noise (docs/quality.md, section 1f); the
# medical recipe used 100 before it moved to window_bn_hook.
precise_bn_hook = dict(type='effnet_backbones.PreciseBNHook', num_iters=20)
# bn_momentum_hook: BN momentum 0.5 early, falling linearly to each layer's own (0.1) over the
# first quarter of the run (iters: an int counts iterations, a float < 1 is a fraction of it).
bn_momentum_hook = dict(type='effnet_backbones.BNMomentumHook', start=0.5, end=None, iters=0.25)
# window_bn_hook: PreciseBN without extra forward passes: before every validation and checkpoint,
# each BN's running mean/var is the plain average of the batch statistics of the last `window`
# training iterations (training itself unchanged; not with EMA, whose weights those batches did
# not see). The medical recipe uses it with max_fraction=0.1 (the window is at most a tenth of
# the iterations done, so early validations average over fewer, more recent weights).
window_bn_hook = dict(type='effnet_backbones.WindowBNHook', window=25)
