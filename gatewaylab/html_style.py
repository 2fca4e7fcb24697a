"""Inline styles shared by the HTML the course shows in notebooks (reports, tables, the dashboard).

Inline, not a stylesheet, so they survive JupyterLab's HTML sanitising in notebooks that are not trusted.
"""

# JupyterLab right-aligns table cells; text reads better from the left, and from the top of a tall row.
LEFT = "text-align:left;vertical-align:top"
