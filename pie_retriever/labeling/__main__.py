"""``python -m pie_retriever.labeling``: the ``pie-retriever label`` command line (:func:`.cli.module_main`)."""

from pie_retriever.labeling.cli import module_main

if __name__ == "__main__":
    raise SystemExit(module_main())
