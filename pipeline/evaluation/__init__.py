"""Model evaluation on a dataset split, and promotion of a challenger over the champion."""
