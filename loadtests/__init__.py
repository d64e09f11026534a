"""Load tests: locust scenarios of editor users (loadtests/scenarios.py), a runner,
`python -m loadtests run --users N --duration S --profile ci|long` (loadtests/runner.py), and the
knee sweep, `python -m loadtests sweep --users 5,10,20,40,80 --out PLOT.png`
(loadtests/sweep.py)."""
