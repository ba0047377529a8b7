"""Command line.

``python -m reprolib run NOTEBOOK --profile P [-p name=value ...] [--out DIR]``: run one chapter.
``python -m reprolib book [--profile P] [--force]``: execute every chapter and build the book.
"""
import sys

if len(sys.argv) > 1 and sys.argv[1] == "book":
    from .book import main as book_main
    sys.exit(book_main(sys.argv[2:]))

from .runner import main

sys.exit(main())
