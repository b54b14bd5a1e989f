"""Reading a Plex answer: RepSys's by-name reader beside zeep's own, on one big answer.

The answer is 4814's shape at a year-end size: 5,022 rows of 7 columns, as the simulated
Plex writes it (``sim.plex.soap.result_xml``). The baseline is zeep reading the same
bytes with the shipped WSDL (``process_reply``), which is what the client did before it
read results itself. A second answer has the fields a newer Plex adds: zeep's strict
reader refuses it, ours reads the same rows, so only ours has a figure there.
"""

from __future__ import annotations

import time
from typing import Any

import requests
import zeep
from lxml import etree

from plex.client import WSDL_PATH
from plex.response import read_result
from sim.plex.soap import result_xml

ROWS = 5_022
REPEAT = 3
COLUMNS = ("Account_No", "Account_Name", "Period", "Debit", "Credit", "Balance", "PCN")


def answer(unknown_elements: bool) -> bytes:
    rows = [
        {name: f"{name[:3]}{i}" if name != "Debit" else f"{i * 1.25:.2f}" for name in COLUMNS}
        for i in range(ROWS)
    ]
    return result_xml(
        "1.1",
        "ExecuteDataSource",
        data_source_key=4814,
        data_source_name="Account_Activity_Summary_xPCN_Get",
        result_sets=[rows],
        instance_no="bench",
        unknown_elements=unknown_elements,
    )


def best_of(fn: Any) -> float:
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    client = zeep.Client(str(WSDL_PATH), settings=zeep.Settings(strict=True))
    binding = client.service._binding
    operation = binding.get("ExecuteDataSource")

    def by_zeep(body: bytes) -> Any:
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "text/xml; charset=utf-8"
        response._content = body
        return binding.process_reply(client, operation, response)

    def ours(body: bytes) -> Any:
        fields = read_result(etree.fromstring(body), "1.1")
        assert fields is not None and len(fields.result_sets[0]) == ROWS
        return fields

    known = answer(unknown_elements=False)
    newer = answer(unknown_elements=True)
    zeep_s = best_of(lambda: by_zeep(known))
    ours_s = best_of(lambda: ours(known))
    ours_newer_s = best_of(lambda: ours(newer))
    try:
        by_zeep(newer)
        zeep_newer = "read it"
    except Exception as exc:  # what strict zeep does with a field it does not know
        zeep_newer = f"refused ({type(exc).__name__})"
    print(f"answer: {ROWS} rows x {len(COLUMNS)} columns, {len(known) / 1e6:.1f} MB")
    print(f"zeep process_reply (baseline): {zeep_s:.3f} s")
    print(f"RepSys read_result:            {ours_s:.3f} s  ({zeep_s / ours_s:.1f}x faster)")
    print(
        f"with a newer Plex's fields:    {ours_newer_s:.3f} s  "
        f"({ours_newer_s / ours_s:.2f}x of the known shape); zeep {zeep_newer}"
    )


if __name__ == "__main__":
    main()
