"""setup.cfg lists every package of the source tree, ships every yaml, and the installed
package exposes the MMRec-style src/ as mmrec_plugin.mmrec_src."""
import configparser
import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cfg():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    return parser


def _listed(value):
    return {line.strip() for line in value.splitlines() if line.strip()}


def test_every_package_is_listed():
    listed = _listed(_cfg()["options"]["packages"])
    on_disk = set()
    for init in glob.glob(os.path.join(REPO, "mmrec_plugin", "**", "__init__.py"), recursive=True):
        rel = os.path.relpath(os.path.dirname(init), REPO)
        on_disk.add(rel.replace(os.sep, "."))
    assert on_disk - listed == set(), "add these packages to setup.cfg [options] packages"
    assert {"mmrec_plugin.mmrec_src", "mmrec_plugin.mmrec_src.models"} <= listed
    mapping = _cfg()["options"]["package_dir"]
    assert "mmrec_plugin.mmrec_src = src" in mapping
    assert os.path.isfile(os.path.join(REPO, "src", "models", "__init__.py"))


def test_every_yaml_is_package_data():
    data = _cfg()["options.package_data"]
    patterns = []
    for pkg, globs in data.items():
        base = "src" if pkg == "mmrec_plugin.mmrec_src" else pkg.replace(".", os.sep)
        patterns += [os.path.join(REPO, base, g.strip()) for g in globs.split(",")]
    shipped = {os.path.normpath(p) for pat in patterns for p in glob.glob(pat)}
    yamls = set()
    for root in ("mmrec_plugin", "src"):
        yamls |= {os.path.normpath(p) for p in
                  glob.glob(os.path.join(REPO, root, "**", "*.yaml"), recursive=True)}
    assert yamls - shipped == set()
    assert os.path.join(REPO, "mmrec_plugin", "host", "configs", "dataset", "demo.yaml") in shipped
    assert os.path.join(REPO, "src", "configs", "model", "BRMRS.yaml") in shipped


def test_console_script_declared():
    eps = _cfg()["options.entry_points"]["console_scripts"]
    assert "mmrec-plugin = mmrec_plugin.cli:main" in eps
