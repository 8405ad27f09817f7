"""Plots and interactive widgets."""
