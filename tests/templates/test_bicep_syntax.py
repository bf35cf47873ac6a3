"""Every Bicep file parses, every module is used, every parameter described."""

import pytest

from .bicep_tree import BICEP_DIR, MAIN, MODULES, all_files, find_property, load, walk

BICEP_FILES = all_files()


def _file_id(path):
    return str(path.relative_to(BICEP_DIR))


def test_main_template_exists():
    assert MAIN.is_file()


def test_modules_exist():
    assert sorted(MODULES.glob("*.bicep"))


@pytest.mark.parametrize("path", BICEP_FILES, ids=_file_id)
def test_bicep_parses_cleanly(path):
    assert load(path).syntax_errors() == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=_file_id)
def test_module_paths_resolve(path):
    bicep = load(path)
    missing = [p for p in bicep.module_paths() if not (path.parent / p).is_file()]
    assert missing == []


def test_every_module_is_used():
    used = {
        (path.parent / module).resolve()
        for path in BICEP_FILES
        for module in load(path).module_paths()
    }
    unused = [p.name for p in MODULES.glob("*.bicep") if p.resolve() not in used]
    assert unused == []


def _parameters():
    return [
        pytest.param(load(path), node, id=f"{_file_id(path)}:{name}")
        for path in BICEP_FILES
        for name, node in load(path).declarations("parameter").items()
    ]


@pytest.mark.parametrize(("bicep", "param"), _parameters())
def test_parameter_has_description(bicep, param):
    assert "description" in bicep.decorator_names(param)


def _secure_parameters(bicep):
    return {
        name
        for name, node in bicep.declarations("parameter").items()
        if "secure" in bicep.decorator_names(node)
    }


@pytest.mark.parametrize("path", BICEP_FILES, ids=_file_id)
def test_outputs_call_no_list_function(path):
    bicep = load(path)
    calls = [
        bicep.text(node)
        for output in bicep.declarations("output").values()
        for node in walk(output)
        if node.type == "call_expression" and bicep.text(node).startswith("list")
    ]
    assert calls == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=_file_id)
def test_outputs_expose_no_secure_parameter(path):
    bicep = load(path)
    secure = _secure_parameters(bicep)
    leaked = [
        bicep.text(node)
        for output in bicep.declarations("output").values()
        for node in walk(output)
        if node.type == "identifier" and bicep.text(node) in secure
    ]
    assert leaked == []


def test_secure_parameter_passed_securely():
    """A secure value passed to a module parameter without @secure() shows in the
    deployment history."""
    main = load(MAIN)
    secure = _secure_parameters(main)
    leaks = []
    for module in main.declarations("module").values():
        module_path = next(c for c in module.named_children if c.type == "string")
        target = load(MAIN.parent / main.text(module_path).strip("'"))
        target_secure = _secure_parameters(target)
        for params in find_property(main, module, "params"):
            for prop in params.named_children:
                if prop.type != "object_property":
                    continue
                name = main.text(prop.named_children[0])
                value = main.text(prop.named_children[-1])
                if value in secure and name not in target_secure:
                    leaks.append(f"{target.path.name}:{name}")
    assert leaks == []
