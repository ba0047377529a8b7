"""Command line.

``python -m reprolib run NOTEBOOK --profile P [-p name=value ...] [--out DIR]``: run one chapter.
``python -m reprolib sweep NOTEBOOK --profile P --grid name=v1,v2 [...] --out DIR [--engine local|ray]``:
run a chapter over a grid of parameters (:mod:`reprolib.sweep`).
``python -m reprolib collect DIR``: one table from every results.json under DIR.
``python -m reprolib book [--profile P] [--force]``: execute every chapter and build the book.
"""
import sys

if len(sys.argv) > 1 and sys.argv[1] == "book":
    from .book import main as book_main
    sys.exit(book_main(sys.argv[2:]))

from .runner import main

sys.exit(main())
