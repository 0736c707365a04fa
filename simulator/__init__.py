"""E-commerce simulator with known ground truth, standing in for the real sources of the lakehouse.

- `simulator.generate.generate(config, landing, truth)`: the history backfill (landing files + truth).
- `simulator.events.simulate_day(world, day)` / `events_between(world, start, end)`: clean
  clickstream and transaction events in landing-schema columns, for a live (Kafka) producer.
- `simulator.truth.load(truth_dir)`: the true demand, cost and shipping functions, for evaluation.
- `simulator.shocks` / `simulator.market`: competitor and demand shocks, the live market sending
  competitor prices to Kafka, and the oracle through the shocks (`simulator.truth.oracle_price`).
See docs/simulator.md.
"""
