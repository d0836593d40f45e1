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
