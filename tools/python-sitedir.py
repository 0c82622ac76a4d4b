"""python-sitedir.py PREFIX - print the folder under PREFIX where this Python
looks for pure modules; `make install` puts the binding hma.py there.

Debian's python3 (default scheme posix_local) reads /usr/lib/python3/dist-packages
for PREFIX=/usr and PREFIX/lib/python3.X/dist-packages for other prefixes
(/usr/local); any other Python uses its posix_prefix scheme
(PREFIX/lib/python3.X/site-packages).
"""
import sys
import sysconfig

prefix = sys.argv[1].rstrip("/") or "/"
if sysconfig.get_default_scheme() == "posix_local":  # Debian and derivatives
    if prefix == "/usr":
        print("/usr/lib/python3/dist-packages")
    else:
        print("%s/lib/python%d.%d/dist-packages" % (prefix, *sys.version_info[:2]))
else:
    print(sysconfig.get_path("purelib", "posix_prefix", vars={"base": prefix, "platbase": prefix}))
