"""DuckDB's name for each function of the planner's vocabulary (``base.FUNCTIONS``): all of them
are DuckDB functions called with the same arguments (the runtime's ``netatlas_*`` are DuckDB
macros and Python functions of those names, installed by ``store/duckdb.py``)."""
from __future__ import annotations

SPELLINGS: dict[str, str] = {
    "collect_list": "list",
    "make_list": "list_value",
    "list_length": "len",
    "sublist": "list_slice",
    "zip_lists": "list_zip",
    "sum_list": "list_sum",
    "reverse_list": "list_reverse",
    "list_positions": "generate_subscripts",
    "range_list": "range",
    "json_at": "json_extract",
    "json_text_at": "json_extract_string",
    "json_has": "json_exists",
    "json_length": "json_array_length",
    "json_merge": "json_merge_patch",
    "json_of_pairs": "json_object",
    "as_json": "to_json",
    "split_string": "string_split",
    "byte_length": "strlen",
    "ends_with": "suffix",
    "regex_quote": "regexp_escape",
    "decode_url": "url_decode",
    "power": "pow",
    "log10": "log10",
    "log2": "log2",
    "gamma": "gamma",
    "is_finite": "isfinite",
    "sample_variance": "var_samp",
    "value_at_max": "arg_max_null",     # max_by skips a row whose x is null: arg_max_null keeps it
    "value_at_min": "arg_min_null",
    "datetime_diff": "date_diff",
    "datetime_part": "date_part",
    "datetime_trunc": "date_trunc",
    "epoch_microseconds": "epoch_us",
    "microseconds": "to_microseconds",
    "minute_microseconds": "microsecond",
    "minute_milliseconds": "millisecond",
}
