#!/usr/bin/env python3
"""Reads Clearway's exported Parquet with two independent readers (pyarrow
and DuckDB) and prints, as JSON, what each found: rows per table, distinct
(transaction, claim, line) keys, the sum of claim charges, the HL7 and FHIR
rows' main columns, and how many
string cells contain any of the PHI markers given on standard input (one
per line). Used by tests/analytics.rs.

usage: analytics-crosscheck.py DIR < markers.txt
"""
import json
import os
import sys

import duckdb
import pyarrow.dataset as ds

def phi_hits(table, markers):
    """String cells of a table that contain any of the markers."""
    hits = 0
    for field in table.schema:
        if str(field.type) not in ("string", "large_string"):
            continue
        for v in table.column(field.name).to_pylist():
            if v is not None and any(m in v for m in markers):
                hits += 1
    return hits


def main():
    root = sys.argv[1]
    markers = [m.strip() for m in sys.stdin.read().splitlines() if len(m.strip()) >= 4]
    out = {"pyarrow": {}, "duckdb": {}, "phi_hits": 0, "received_dates": {}}
    con = duckdb.connect()
    # Every table the export wrote (a directory under v1/).
    tables = sorted(os.listdir(os.path.join(root, "v1"))) if os.path.isdir(os.path.join(root, "v1")) else []
    for t in tables:
        path = os.path.join(root, "v1", t)
        if not os.path.isdir(path):
            out["pyarrow"][t] = 0
            out["duckdb"][t] = 0
            continue
        table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
        out["pyarrow"][t] = table.num_rows
        if "received_date" in table.schema.names:
            out["received_dates"][t] = sorted({str(d) for d in table.column("received_date").to_pylist()})
        glob = os.path.join(path, "**", "*.parquet")
        out["duckdb"][t] = con.execute(
            "SELECT count(*) FROM read_parquet(?, hive_partitioning = true)", [glob]).fetchone()[0]
        out["phi_hits"] += phi_hits(table, markers)
        if t == "claim":
            out["claim_charge_sum_pyarrow"] = str(sum(v for v in table.column("total_charge").to_pylist() if v is not None))
            out["claim_charge_sum_duckdb"] = str(con.execute(
                "SELECT sum(total_charge) FROM read_parquet(?, hive_partitioning = true)", [glob]).fetchone()[0])
            out["claim_distinct_duckdb"] = con.execute(
                "SELECT count(DISTINCT claim_key) FROM read_parquet(?, hive_partitioning = true)", [glob]).fetchone()[0]
            out["claim_rejected_duckdb"] = con.execute(
                "SELECT count(*) FROM read_parquet(?, hive_partitioning = true) WHERE status = 'rejected'",
                [glob]).fetchone()[0]
        if t == "claim_line":
            out["line_distinct_duckdb"] = con.execute(
                "SELECT count(*) FROM (SELECT DISTINCT claim_key, line_number FROM read_parquet(?, hive_partitioning = true))",
                [glob]).fetchone()[0]
        for name, cols, order in (
            ("hl7_message", "msh9_code, msh9_trigger, msh10_control_id, msa1_ack_code, err_count, status", "msh10_control_id"),
            ("fhir_request", "resource_type, claims, answer_type, answer_errors, status", "resource_type"),
        ):
            if t == name:
                cur = con.execute(
                    f"SELECT {cols} FROM read_parquet(?, hive_partitioning = true) ORDER BY {order}", [glob])
                names = [d[0] for d in cur.description]
                out[f"{name}_rows_duckdb"] = [dict(zip(names, r)) for r in cur.fetchall()]
    # Layer B: the Tuva snapshots (one snapshot_date directory per table),
    # read once each: rows, and PHI searched like layer A.
    snap_rows = {}
    for t in ("medical_claim", "eligibility", "pharmacy_claim"):
        path = os.path.join(root, "tuva", t)
        if not os.path.isdir(path):
            continue
        table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
        snap_rows[t] = table.num_rows
        out["phi_hits"] += phi_hits(table, markers)
    snap = os.path.join(root, "tuva", "medical_claim")
    if os.path.isdir(snap):
        glob = os.path.join(snap, "*", "*.parquet")
        r = con.execute(
            "SELECT count(*), count(paid_amount), sum(paid_amount), sum(deductible_amount), sum(allowed_amount), "
            "count(DISTINCT snapshot_date) FROM read_parquet(?, hive_partitioning = true)", [glob]).fetchone()
        out["tuva_medical_claim_snapshot"] = {
            "rows": r[0], "paid_lines": r[1], "paid_sum": r[2], "deductible_sum": r[3], "allowed_sum": r[4],
            "dates": r[5],
            "paid_files": [f for (f,) in con.execute(
                "SELECT DISTINCT file_name FROM read_parquet(?, hive_partitioning = true) "
                "WHERE paid_amount IS NOT NULL ORDER BY 1", [glob]).fetchall()],
            "pyarrow_rows": snap_rows["medical_claim"],
        }
    for t in ("eligibility", "pharmacy_claim"):
        if t in snap_rows:
            out[f"tuva_{t}_snapshot_rows"] = snap_rows[t]
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
