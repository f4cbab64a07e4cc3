"""Reporting: the leaderboard with paired statistics, the paper's claims, selector evaluation,
plots and the self-contained HTML report.

``board.build_leaderboard(rows)`` -> ``leaderboard.render(board, fmt)``;
``report.write_report(cfg)`` writes ``<storage>/<name>/leaderboard.{md,csv,html}``,
``claims.{md,csv}``, ``selectors.{md,csv}`` and the plots (``plots.make_plots(cfg)``, matplotlib
imported only there). Import each name from the module that owns it.
"""
