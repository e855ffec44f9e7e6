# adamw_cosine_4k.py with no weight decay for norms, biases and the SE / scSE gates: only plain
# conv and linear weights decay. The paramwise_cfg is tasks.engine.optim.no_decay_paramwise_cfg()
# (a test checks they agree). Use it in place of adamw_cosine_4k.py in a recipe's _base_ list.
_base_ = ['./adamw_cosine_4k.py']

optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0.0,  # every BatchNorm / GroupNorm / LayerNorm weight and bias
        bias_decay_mult=0.0,  # every other bias
        flat_decay_mult=0.0,  # any other 1-d parameter
        custom_keys={  # the attention gates' weights and biases (substrings of parameter names)
            '.se.': dict(decay_mult=0.0),  # MBConv squeeze-excitation (se.reduce, se.expand)
            'channel_gate': dict(decay_mult=0.0),  # scSE on the encoder taps
            'spatial_gate': dict(decay_mult=0.0),
            '.cSE.': dict(decay_mult=0.0),  # smp decoder attention (decoder_attention_type='scse')
            '.sSE.': dict(decay_mult=0.0),
        },
    ),
)
