"""Moderation: the operator's content policy, before the model (the input stage, in the
web process) and after it (the output stage, on the worker), refusing in OpenAI's
`moderation_blocked` shape; abuse records and key suspension (README, "Moderation").

- policy.py: the policy file, its validation and the term and pattern matching;
- classifiers.py: the optional transformers classifiers, loaded only when used;
- checks.py: the two stages, the `moderation` level and the error;
- records.py: block records, suspension, their purge and the dashboard's history;
- models.py: the block record.
"""
