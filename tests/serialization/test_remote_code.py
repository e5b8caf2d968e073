"""The generated flat remote-code files: what transformers needs from them, and refusals of unflattenable code."""

from __future__ import annotations

import ast

import pytest
from transformers.dynamic_module_utils import get_imports, get_relative_imports

from modeling_xcross.remote_code import AUTO_MAP, _split, remote_code_files


def test_flat_files_import_only_each_other_and_installed_libraries(tmp_path):
    files = remote_code_files()
    assert set(files) == {f"{entry.split('.')[0]}.py" for entry in AUTO_MAP.values()}
    for name, source in files.items():
        (tmp_path / name).write_text(source)
        ast.parse(source)
    modeling = tmp_path / "modeling_xcross.py"
    assert get_relative_imports(modeling) == ["configuration_xcross"]
    assert get_relative_imports(tmp_path / "configuration_xcross.py") == []
    assert not {"modeling_xcross", "configuration_xcross"} & set(get_imports(modeling))
    assert "class XCrossForSequentialRecommendation(" in files["modeling_xcross.py"]


@pytest.mark.parametrize("line", ["from .layer import XCrossLayer as Layer", "from .layer import *",
                                  "import modeling_xcross.layer"])
def test_unflattenable_imports_are_refused(tmp_path, line):
    module = tmp_path / "module.py"
    module.write_text(f"{line}\n")
    with pytest.raises(ValueError, match="module.py"):
        _split(module)
