"""``python -m vggx``: the ``vggx`` command, for an environment whose scripts folder is not on ``PATH``."""

from vggx.entry import main

main()
