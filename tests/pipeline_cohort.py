"""The tiny simulated cohort of the end-to-end tests: 5 training subjects and 1 held out."""

TRAIN = ["001", "002", "003", "004", "005"]
HELD_OUT = "006"

#: Options of the end-to-end runs on this cohort (fast and reproducible).
FAST_OPTIONS = ["--sloppy", "--nprocs", "2", "--omp-nthreads", "1", "--random-seed", "1", "--min-time", "40",
                "--skip-bids-validation"]  # fmt: skip
