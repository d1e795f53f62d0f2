"""Datasets of human and machine voices: spoof generators, channel, noise, manifest, splits, builders.

Real clips and their spoofs (copy-synthesis through vocoders, TTS) go through one shared channel
(:mod:`fakevoice.datasets.channel`), are stored as clean 16 kHz clips, and are rendered as
spectrogram images at several noise levels (:mod:`fakevoice.datasets.noise`), listed in a manifest.
"""
