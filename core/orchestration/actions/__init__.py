"""One function per user action, below the pages.

Pages hold widgets, layout and the call; everything that reads or writes the database goes
through a function here, so it is tested without a browser. Every writing action takes the
acting person (`Actor`) and re-checks it inside its own transaction (`acting.writing`).
Modules follow the pages: account (sign-in), annotate, review, generate, data, probes, runs,
users; `acting` holds the one shared check.
"""
