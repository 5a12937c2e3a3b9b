"""The analyses: head scores and census, importance, ablation, patching, rollout, attribution, comparison."""
