"""Install tools/torchvision_cpu_shim.py into this interpreter's site-packages if torchvision fails to import."""

import pathlib
import shutil
import subprocess
import sys
import sysconfig

site = pathlib.Path(sysconfig.get_paths()["purelib"])
pth, mod = site / "pela_torchvision_cpu_shim.pth", site / "_torchvision_cpu_shim.py"
for f in (pth, mod):
    f.unlink(missing_ok=True)
if subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True).returncode != 0:
    shutil.copy(pathlib.Path(__file__).with_name("torchvision_cpu_shim.py"), mod)
    pth.write_text("import _torchvision_cpu_shim\n")
    print("torchvision's compiled ops cannot load beside the CPU torch wheel; installed the import shim")
subprocess.run([sys.executable, "-c", "import torchvision, timm"], check=True)
