"""Continuous action-head policies (AtlasVLA / AsyncVLA style): a backbone plus a flow-matching expert.

config.py (no torch), expert.py (the flow, its SDE, the shared log-prob), backbone.py, policy.py,
learning.py (turn records and learner batches). docs/action_head.md.
"""
