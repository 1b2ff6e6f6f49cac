"""Seed 002 Overview and UsageStats: the dashboard's figures, computed by the database."""
