"""The tiny simulated cohort of the end-to-end tests: 5 training subjects and 1 held out."""

TRAIN = ["001", "002", "003", "004", "005"]
HELD_OUT = "006"
