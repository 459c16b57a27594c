"""Model evaluation on a dataset split, and promotion of a challenger over the champion.

Public: ``job.evaluate``, ``promotion.promote``, ``explain_files.explain_files`` (``pipeline
explain`` on raw files). Internal: ``scoring`` (numpy over a split),
``corruptions`` and ``robustness`` (accuracy under corruption), ``adversarial`` (FGSM),
``explanations`` (Grad-CAM, integrated gradients, token occlusion) and ``explained`` (which rows).
"""
