"""``kansa web``: the dashboard (app.py), its access control (auth.py), the overview's
follower-fed figures (rollup.py), words in ja/en (strings.py), SVG charts (charts.py).
Layer 7: reads through the public Ledger, the follower and the owners' query methods."""
