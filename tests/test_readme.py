"""The README's Python examples run as printed (in order, sharing one namespace)."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for i, block in enumerate(blocks):
        block = block.replace("epochs=3", "epochs=1")  # keep the training example short here
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "['0.w', '0.b', '4.w', '4.b']" in out
    assert "gradcheck channel_scale()" in out and "FAIL" not in out
