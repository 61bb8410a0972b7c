"""Readers of public data sets (the IEB benchmark). Used by pools, labeling, training and evaluation."""
