import subprocess
import sys


def test_import_does_not_load_torch_or_faiss():
    code = (
        "import sys, pie_retriever\n"
        "from pie_retriever import PIERetriever, Demonstration, Hit, load_pool\n"
        "import pie_retriever.cli, pie_retriever.integrations\n"
        "bad = [m for m in ('torch', 'faiss', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_lazy_exports_resolve():
    import pie_retriever

    for name in pie_retriever.__all__:
        assert getattr(pie_retriever, name) is not None
    assert "PIERetriever" in dir(pie_retriever)
