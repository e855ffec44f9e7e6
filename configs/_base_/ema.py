# Switch: an exponential moving average of the weights (MMEngine's EMAHook), validated and saved
# in place of the raw weights. Lists replace lists when configs merge, so this file only defines
# `ema_hook`; a config turns it on by appending it to the custom_hooks it inherits:
#
#   _base_ = ['./unet_effb0_quick.py', './_base_/ema.py']
#   custom_hooks = [*_base_.custom_hooks, _base_.ema_hook]
#
# The medical recipe's last hook, WindowBNHook, averages the batch statistics of the raw weights
# and stops a run that has EMAHook: swap it for PreciseBN, which recomputes them for the EMA ones:
#
#   _base_ = ['./unet_effb4_medical.py', './_base_/ema.py']  # precise_bn_hook comes with it
#   custom_hooks = [*_base_.custom_hooks[:-1], _base_.ema_hook, _base_.precise_bn_hook]
#
# MomentumAnnealingEMA: momentum max(0.0002, gamma / (gamma + step)), i.e. the average covers
# roughly the last step / gamma iterations (TF-EfficientNet's EMA uses the same warm-up,
# decay min(0.9999, (1 + n) / (10 + n))). A fixed momentum suits only runs much longer than
# 1 / momentum: with 0.001 over the CPU profile's 400 iterations, 0.999 ** 400 = 67% of the
# average would still be the random initial weights. Running BN statistics stay the raw model's
# (update_buffers=False); add configs/_base_/precise_bn.py to recompute them for the EMA weights.
ema_hook = dict(type='EMAHook', ema_type='MomentumAnnealingEMA', momentum=0.0002, gamma=10,
                update_buffers=False)
