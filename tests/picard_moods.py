"""Print, as JSON, the ``mood`` MusicBrainz Picard reads from each file given, with Picard's
own tag-reading code (``picard.formats``, as Debian's ``picard`` package installs it).

Run with the system Python (``/usr/bin/python3 tests/picard_moods.py FILE...``), which is
where Picard lives; tests/test_tag_readers.py does. Picard's settings are the defaults its
readers consult; no GUI, no network.
"""

import json
import sys
from unittest.mock import Mock

sys.path.insert(0, "/usr/lib/picard")  # Debian keeps Picard's package outside dist-packages

from picard import config  # noqa: E402
from PyQt5 import QtCore  # noqa: E402

SETTINGS = {
    "itunes_compatible_grouping": False,
    "rating_user_email": "users@musicbrainz.org",
    "rating_steps": 6,
    "write_id3v23": False,
    "id3v23_join_with": "/",
    "id3v2_encoding": "utf-8",
    "enabled_plugins": [],
    "save_images_to_tags": True,
    "clear_existing_tags": False,
    "preserved_tags": [],
    "remove_id3_from_flac": False,
    "remove_ape_from_mp3": False,
    "fix_missing_seekpoints_flac": False,
    "aac_save_ape": False,
    "remove_ape_from_aac": False,
    "ac3_save_ape": False,
    "remove_ape_from_ac3": False,
    "write_wave_riff_info": False,
    "remove_wave_riff_info": False,
    "wave_riff_info_encoding": "windows-1252",
}


def main(paths):
    fake = Mock()
    fake.setting, fake.persist, fake.profiles = dict(SETTINGS), {}, {}
    config.config, config.setting = fake, fake.setting
    QtCore.QObject.tagger = Mock()  # picard.formats looks up the running tagger

    from picard.formats import open_

    moods = {}
    for path in paths:
        file = open_(path)
        moods[path] = None if file is None else file._load(path).getall("mood")
    json.dump(moods, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
