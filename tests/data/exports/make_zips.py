"""Rebuild the zipped export fixtures from the plain ones: python make_zips.py.

Fixed timestamps keep the output byte-identical between runs.
"""

import zipfile
from pathlib import Path

HERE = Path(__file__).parent
STAMP = (2026, 12, 1, 9, 0, 0)


def write_zip(target: str, source: str, member: str) -> bytes:
    info = zipfile.ZipInfo(member, date_time=STAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(HERE / target, "w") as archive:
        archive.writestr(info, (HERE / source).read_bytes())
    return (HERE / target).read_bytes()


def main() -> None:
    write_zip("full14.csv.zip", "full14.csv", "full.csv")
    whole = write_zip("full15.csv.zip", "full15.csv", "full.csv")
    write_zip("full.json.zip", "recent.json", "full.json")

    # A download cut off at about 70%: the central directory is gone.
    (HERE / "truncated.csv.zip").write_bytes(whole[: len(whole) * 7 // 10])


if __name__ == "__main__":
    main()
