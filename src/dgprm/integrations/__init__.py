"""dgprm in RL trainers: TRL (:mod:`.trl`: :class:`~dgprm.integrations.trl.DGPRMReward` for
``GRPOTrainer(reward_funcs=[...])``) and verl (:mod:`.verl`: ``compute_score`` for
``custom_reward_function``). OpenRLHF talks to ``dgprm serve`` over HTTP (``/get_reward``).

Nothing here imports TRL or verl: the trainers call dgprm, not the other way round.
"""
