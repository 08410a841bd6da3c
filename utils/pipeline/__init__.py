"""How the chain runs: config composition, state-dir paths, step config files, the step runner, MLflow tracking, env files."""
