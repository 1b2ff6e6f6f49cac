"""Networks for operators (seed 002 Networks, Pricing): settings, lifecycle, pricing edits."""
