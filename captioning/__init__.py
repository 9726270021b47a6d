"""Audio captioning on the project's audio encoders (see README "Captions").

    from captioning.captioner import load_captioner
    captioner = load_captioner()                  # the shipped offline captioner (mini + small decoder)
    captioner.caption_file("rain.wav").caption    # long files: per-segment captions with time stamps
    from captioning.metrics import caption_metrics  # BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE, SPIDEr

Modules: `features` (audio tokens per encoder family), `model` (mapping network + decoder, decoding),
`train` (training loop), `store` (save/load), `metrics` and `spice` (scoring), `data` (datasets).
Nothing is imported here: `import captioning` stays free of torch.
"""
