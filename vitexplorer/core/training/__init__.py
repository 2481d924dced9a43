"""Training and fine-tuning: the engine (a generator of events), datasets, augmentation,
the time-lapse of attention through training, estimates of time and memory."""
