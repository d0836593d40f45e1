"""Workbooks for the tests: an Azure Monitor workbook (the gallery template format, written for
these tests) and a netatlas workbook."""
from __future__ import annotations

import json


def azure_workbook(computer: str = "acme-demo") -> dict:
    """An Azure Monitor workbook of every kind of item: markdown, parameters (a time range, a text,
    a static drop-down, a subscription picker netatlas lacks), KQL queries drawn as a table, a
    timechart, tiles, a pie and a bar chart, one in a group; and items netatlas cannot show (a
    metric item, links, a Resource Graph query, a graph visualization, an item of an unknown type)."""
    return {
        "version": "Notebook/1.0",
        "items": [
            {"type": 1, "name": "intro", "content": {"json": "## Connections review\nThe machine **{Computer}** over {TimeRange}."}},
            {"type": 9, "name": "parameters - 1", "content": {
                "version": "KqlParameterItem/1.0", "crossComponentResources": ["{Subscription}"],
                "parameters": [
                    {"id": "8c0d2b3e-1", "version": "KqlParameterItem/1.0", "name": "TimeRange", "type": 4,
                     "isRequired": True, "value": {"durationMs": 172800000},
                     "typeSettings": {"selectableValues": [{"durationMs": 3600000}, {"durationMs": 86400000},
                                                           {"durationMs": 172800000}], "allowCustom": True}},
                    {"id": "8c0d2b3e-2", "version": "KqlParameterItem/1.0", "name": "Computer", "type": 1,
                     "label": "Machine", "value": computer},
                    {"id": "8c0d2b3e-3", "version": "KqlParameterItem/1.0", "name": "Direction", "type": 2,
                     "jsonData": json.dumps([{"value": "outbound", "label": "Outbound"},
                                             {"value": "inbound", "label": "Inbound"}]), "value": "outbound"},
                    {"id": "8c0d2b3e-5", "version": "KqlParameterItem/1.0", "name": "Process", "type": 2,
                     "query": "VMConnection\n| where Computer == '{Computer}'\n| distinct ProcessName\n| order by ProcessName asc",
                     "typeSettings": {"additionalResourceOptions": [], "showDefault": False},
                     "queryType": 0, "resourceType": "microsoft.operationalinsights/workspaces", "value": None},
                    {"id": "8c0d2b3e-4", "version": "KqlParameterItem/1.0", "name": "Subscription", "type": 6,
                     "isRequired": True, "value": "/subscriptions/00000000-0000-0000-0000-000000000000"},
                ],
                "style": "pills", "queryType": 0, "resourceType": "microsoft.operationalinsights/workspaces"}},
            {"type": 3, "name": "connections per process", "content": {
                "version": "KqlItem/1.0", "title": "Connections of {Computer} by process",
                "query": "VMConnection\n| where Computer == \"{Computer}\" and Direction == \"{Direction}\"\n"
                         "| summarize Connections = sum(LinksEstablished), Bytes = sum(BytesSent) by ProcessName\n"
                         "| order by Connections desc",
                "size": 0, "timeContextFromParameter": "TimeRange", "queryType": 0,
                "resourceType": "microsoft.operationalinsights/workspaces", "visualization": "table"}},
            {"type": 3, "name": "bytes over time", "content": {
                "version": "KqlItem/1.0", "title": "Bytes sent per hour",
                "query": "VMConnection\n| where TimeGenerated {TimeRange}\n"
                         "| summarize Bytes = sum(BytesSent) by bin(TimeGenerated, {TimeRange:grain})",
                "size": 0, "queryType": 0, "resourceType": "microsoft.operationalinsights/workspaces",
                "visualization": "timechart"}},
            {"type": 3, "name": "failures tiles", "content": {
                "version": "KqlItem/1.0", "title": "Failed links by machine",
                "query": "VMConnection | summarize Failed = sum(LinksFailed) by Computer | top 6 by Failed",
                "size": 3, "timeContext": {"durationMs": 86400000}, "queryType": 0,
                "resourceType": "microsoft.operationalinsights/workspaces", "visualization": "tiles",
                "tileSettings": {"titleContent": {"columnMatch": "Computer", "formatter": 1},
                                 "leftContent": {"columnMatch": "Failed", "formatter": 12},
                                 "showBorder": False}}},
            {"type": 10, "name": "cpu metric", "content": {"version": "MetricsItem/2.0", "size": 0, "chartType": 2,
                                                           "metrics": [{"namespace": "microsoft.compute/virtualmachines",
                                                                        "metric": "Percentage CPU"}]}},
            {"type": 12, "name": "group - processes", "content": {
                "version": "NotebookGroup/1.0", "groupType": "editable", "title": "Processes",
                "items": [
                    {"type": 3, "name": "ports pie", "content": {
                        "version": "KqlItem/1.0", "title": "Open ports by process",
                        "query": "VMBoundPort | summarize Ports = dcount(Port) by ProcessName | top 8 by Ports",
                        "size": 1, "timeContextFromParameter": "TimeRange", "queryType": 0,
                        "visualization": "piechart"}},
                    {"type": 3, "name": "remote bar", "content": {
                        "version": "KqlItem/1.0", "title": "Top remote ports",
                        "query": "VMConnection | where Direction == 'outbound' | summarize Links = sum(LinksEstablished) by tostring(DestinationPort) | top 10 by Links",
                        "size": 1, "timeContextFromParameter": "TimeRange", "queryType": 0,
                        "visualization": "barchart"}},
                    {"type": 3, "name": "resource graph", "content": {
                        "version": "KqlItem/1.0", "title": "Virtual machines (Resource Graph)",
                        "query": "Resources | where type =~ 'microsoft.compute/virtualmachines'",
                        "size": 0, "queryType": 1, "resourceType": "microsoft.resourcegraph/resources"}},
                ]}},
            {"type": 3, "name": "dependency graph", "content": {
                "version": "KqlItem/1.0", "title": "Dependency graph", "query": "VMConnection | take 10",
                "queryType": 0, "visualization": "graph"}},
            {"type": 11, "name": "links", "content": {"version": "LinkItem/1.0", "style": "tabs",
                                                      "links": [{"linkTarget": "url", "linkLabel": "Docs"}]}},
            {"type": 99, "name": "future item", "content": {"version": "Future/1.0"}},
        ],
        "fallbackResourceIds": ["Azure Monitor"],
        "$schema": "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json",
    }


# the Azure items above that become query tiles (id -> visualization), and the unsupported ones
AZURE_QUERY_TILES = {"connections-per-process": "table", "bytes-over-time": "timechart",
                     "failures-tiles": "tiles", "ports-pie": "piechart", "remote-bar": "barchart"}
AZURE_UNSUPPORTED = {"cpu-metric", "resource-graph", "dependency-graph", "links", "future-item"}


def small_workbook(title: str = "Checks") -> dict:
    return {"format": "netatlas-workbook", "version": 1, "title": title, "description": "made by a test",
            "parameters": [{"name": "TimeRange", "type": "timerange", "value": "P1D"},
                           {"name": "Computer", "type": "machine", "value": "acme-demo"},
                           {"name": "Group", "type": "group", "value": "all"},
                           {"name": "Note", "type": "text", "value": "hello"}],
            "tiles": [{"id": "links", "type": "query", "title": "Links of {Computer}",
                       "query": 'VMConnection | where Computer == "{Computer}" | summarize Links = sum(LinksEstablished) by ProcessName',
                       "visualization": "table", "timeRange": "TimeRange"},
                      {"id": "count", "type": "query", "title": "Records", "query": "VMConnection | count",
                       "visualization": "tiles", "timeRange": "TimeRange", "size": "third"},
                      {"id": "map", "type": "map", "title": "Map", "machine": "{Computer}", "timeRange": "TimeRange"},
                      {"id": "text", "type": "text", "title": "", "text": "Note: {Note}, over {TimeRange}"}]}


# ---------------------------------------------------------------- multi-select parameters and conditional tiles

MULTI_MACHINES = ("acme-demo", "admdemo-appsvr", "sql-01.contoso.local")


def multi_workbook(title: str = "Machines side by side") -> dict:
    """A netatlas workbook with a multi-select parameter (its choices from a query; nothing
    selected by default) and tiles shown by a drop-down's value (``visibleWhen``)."""
    names = ", ".join(f'"{m}"' for m in MULTI_MACHINES)
    return {"format": "netatlas-workbook", "version": 1, "title": title,
            "parameters": [
                {"name": "TimeRange", "type": "timerange", "value": "P2D"},
                {"name": "Computers", "type": "text", "label": "Machines", "multi": True, "quote": "'", "delimiter": ",",
                 "query": f"VMComputer | where Computer in ({names}) | distinct Computer | order by Computer asc",
                 "value": ""},
                {"name": "View", "type": "text", "choices": ["summary", "detail"], "value": "summary"}],
            "tiles": [
                {"id": "per-machine", "type": "query", "title": "Records of {Computers:label}", "visualization": "table",
                 "query": "VMConnection | where Computer in ({Computers}) | summarize Records = count() by Computer "
                          "| order by Computer asc", "timeRange": "TimeRange"},
                {"id": "summary", "type": "query", "title": "All records", "visualization": "table",
                 "query": "VMConnection | summarize Records = count()", "timeRange": "TimeRange",
                 "visibleWhen": [{"parameter": "View", "comparison": "equals", "value": "summary"}]},
                {"id": "detail", "type": "query", "title": "Links by machine", "visualization": "table",
                 "query": "VMConnection | summarize Links = sum(LinksEstablished) by Computer | order by Computer asc "
                          "| take 5", "timeRange": "TimeRange",
                 "visibleWhen": [{"parameter": "View", "comparison": "not_equals", "value": "summary"}]}]}


def azure_conditional_workbook() -> dict:
    """An Azure Monitor workbook of multi-select drop-downs (quoted ', bare and quoted " with
    another delimiter; one with the "All" selection) and items shown by a condition: one item's,
    a group's (passed down to its items, one of which has its own too), a comparison netatlas
    lacks and a condition on a parameter the workbook does not have."""
    query = {"queryType": 0, "resourceType": "microsoft.operationalinsights/workspaces", "size": 0,
             "timeContextFromParameter": "TimeRange", "visualization": "table"}
    return {
        "version": "Notebook/1.0",
        "items": [
            {"type": 9, "name": "parameters", "content": {"version": "KqlParameterItem/1.0", "parameters": [
                {"name": "TimeRange", "type": 4, "value": {"durationMs": 172800000}},
                {"name": "Computers", "type": 2, "label": "Machines", "multiSelect": True, "quote": "'", "delimiter": ",",
                 "query": "VMComputer | distinct Computer | order by Computer asc", "queryType": 0,
                 "typeSettings": {"additionalResourceOptions": [], "showDefault": False},
                 "value": ["acme-demo", "admdemo-appsvr"]},
                {"name": "Ports", "type": 2, "multiSelect": True, "quote": "", "delimiter": ",",
                 "jsonData": json.dumps([{"value": "80"}, {"value": "443"}, {"value": "1433"}]), "value": ["80", "443"]},
                {"name": "Names", "type": 2, "multiSelect": True, "quote": "\"", "delimiter": " , ",
                 "jsonData": json.dumps(["acme-demo", "o'brien \"x\\y\""]), "value": ["acme-demo", "o'brien \"x\\y\""]},
                {"name": "Everything", "type": 2, "multiSelect": True, "jsonData": json.dumps(["a", "b"]),
                 "typeSettings": {"selectAllValue": "*"}, "value": ["value::all"]},
                {"name": "View", "type": 2, "jsonData": json.dumps(["summary", "detail"]), "value": "summary"},
            ], "style": "pills", "queryType": 0}},
            {"type": 3, "name": "by machine", "content": {
                **query, "title": "Records of {Computers:label}",
                "query": "VMConnection | where Computer in ({Computers}) | summarize Records = count() by Computer"}},
            {"type": 3, "name": "by port", "content": {
                **query, "title": "Links by port",
                "query": "VMConnection | where DestinationPort in ({Ports}) | summarize Links = count() by DestinationPort"}},
            {"type": 3, "name": "names", "content": {
                **query, "title": "Names", "query": "print n = array_length(pack_array({Names})), last = {Names}"}},
            {"type": 3, "name": "summary", "conditionalVisibility": {"parameterName": "View", "comparison": "isEqualTo",
                                                                     "value": "summary"},
             "content": {**query, "title": "All records", "query": "VMConnection | summarize Records = count()"}},
            {"type": 12, "name": "details", "conditionalVisibility": {"parameterName": "View", "comparison": "isEqualTo",
                                                                      "value": "detail"},
             "content": {"version": "NotebookGroup/1.0", "groupType": "editable", "title": "Details", "items": [
                 {"type": 3, "name": "detail links",
                  "conditionalVisibilities": [{"parameterName": "Computers", "comparison": "isNotEqualTo", "value": ""}],
                  "content": {**query, "title": "Links of the machines",
                              "query": "VMConnection | where Computer in ({Computers}) "
                                       "| summarize Links = sum(LinksEstablished) by Computer"}},
                 {"type": 1, "name": "detail note", "content": {"json": "Details of {Computers:label}"}},
             ]}},
            {"type": 3, "name": "odd condition", "conditionalVisibility": {"parameterName": "View",
                                                                           "comparison": "isGreaterThan", "value": "a"},
             "content": {**query, "title": "Odd", "query": "print n = 1"}},
            {"type": 3, "name": "tab condition", "conditionalVisibility": {"parameterName": "selectedTab",
                                                                           "comparison": "isEqualTo", "value": "x"},
             "content": {**query, "title": "On a tab", "query": "print n = 2"}},
        ],
        "$schema": "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json",
    }
