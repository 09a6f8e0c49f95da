"""JUnit XML for CI systems (Zuul, Jenkins, GitLab): one test case per phase step and hook.

    <testsuites>
      <testsuite name="tidegate-gate.<cloud>" tests failures errors skipped time>
        <properties> base, head, test cloud, engine </properties>
        <testcase classname="gate.<phase>" name="<case>" time>
          <failure message="…">the service's last log lines / the hook's output</failure>
          or <skipped message="…"/>
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from .report import Report


def _clean(text: str) -> str:
    # XML 1.0 forbids most control characters; container logs may carry them
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)


def to_xml(report: Report) -> bytes:
    cases = [(p, c) for p in report.phases for c in (p.cases or [])]
    # a phase that ended without cases (e.g. not reached) is still one test case
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", {
        "name": f"tidegate-gate.{report.cloud}",
        "tests": "0", "failures": "0", "errors": "0", "skipped": "0",
        "time": f"{report.seconds:.3f}"})
    props = ET.SubElement(suite, "properties")
    for k, v in (("base", report.base), ("head", report.head), ("test_cloud", report.test_cloud),
                 ("engine", report.engine)):
        ET.SubElement(props, "property", {"name": k, "value": v})
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for phase in report.phases:
        for case in phase.cases or [None]:
            name = case.name if case else phase.name
            ok = case.ok if case else phase.ok
            seconds = case.seconds if case else phase.seconds
            el = ET.SubElement(suite, "testcase", {"classname": f"gate.{phase.name}", "name": _clean(name),
                                                   "time": f"{seconds:.3f}"})
            counts["tests"] += 1
            message = _clean((case.message if case else phase.message) or "")
            if ok is False:
                counts["failures"] += 1
                failure = ET.SubElement(el, "failure", {"message": message[:1000], "type": phase.name})
                failure.text = _clean(case.output if case and case.output else message)
            elif ok is None:
                counts["skipped"] += 1
                ET.SubElement(el, "skipped", {"message": message[:1000]})
    if report.error:
        el = ET.SubElement(suite, "testcase", {"classname": "gate", "name": "infrastructure", "time": "0"})
        err = ET.SubElement(el, "error", {"message": _clean(report.error)[:1000]})
        err.text = _clean(report.error)
        counts["tests"] += 1
        counts["errors"] += 1
    for k, v in counts.items():
        suite.set(k, str(v))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
