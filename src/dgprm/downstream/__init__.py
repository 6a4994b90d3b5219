"""Using the rewards downstream: PRM-guided search on ARC-Challenge, StrategyQA, QASC.

- :mod:`.tasks` — the three tasks' loaders into one :class:`~.tasks.TaskRecord`;
- :mod:`.answers` — the question as shown, step splitting, answer extraction;
- :mod:`.policy` — prompting the policy: whole solutions and single steps;
- :mod:`.prm` — the PRM protocol, the outcome judge (``orm``), solution scores;
- :mod:`.strategies` — majority vote, best-of-N, weighted vote (pure functions);
- :mod:`.beam` — step-level beam search guided by a PRM;
- :mod:`.bench` — the benchmark runner (resumable run directory);
- :mod:`.results` — accuracy with Wilson intervals, costs, table and chart;
- :mod:`.pairs` — correct-vs-incorrect preference pairs from training questions.
"""
