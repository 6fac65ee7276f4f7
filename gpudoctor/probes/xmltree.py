"""A minimal element tree for nvidia-smi XML, built with expat.

nvidia-smi XML is plain nested elements with text leaves and a few attributes; reading
it needs `find("a/b")`, `findall("gpu")`, `.text`, `.tag` and `.get(name)`.
xml.etree.ElementTree would bring ElementPath, copy, weakref and contextlib (~2.5 ms of
preflight's budget, docs/startup.md) for that. The meaning of each call is
ElementTree's for the simple child paths used here (tests/test_xmltree.py compares the
two on every corpus file): `.text` is the text before the first child, `find` returns
the first match in document order, a path step names a child tag.
"""

from __future__ import annotations

from xml.parsers import expat

ParseError = expat.ExpatError


class XmlElement:
    __slots__ = ("tag", "attrib", "text", "children", "_text_parts")

    def __init__(self, tag: str, attrib: dict[str, str]) -> None:
        self.tag = tag
        self.attrib = attrib
        self.text: str | None = None
        self.children: list[XmlElement] = []
        self._text_parts: list[str] | None = []  # None once the first child started

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.attrib.get(name, default)

    def findall(self, path: str) -> list[XmlElement]:
        found = [self]
        for step in path.split("/"):
            found = [child for element in found for child in element.children if child.tag == step]
        return found

    def find(self, path: str) -> XmlElement | None:
        found = self.findall(path)
        return found[0] if found else None


def fromstring(data: bytes) -> XmlElement:
    """The root element; ParseError (expat's) for malformed input."""
    parser = expat.ParserCreate()
    stack: list[XmlElement] = []
    roots: list[XmlElement] = []

    def start(tag: str, attrib: dict[str, str]) -> None:
        element = XmlElement(tag, attrib)
        if stack:
            parent = stack[-1]
            if parent._text_parts is not None:
                parent.text = "".join(parent._text_parts) if parent._text_parts else None
                parent._text_parts = None
            parent.children.append(element)
        else:
            roots.append(element)
        stack.append(element)

    def end(_tag: str) -> None:
        element = stack.pop()
        if element._text_parts is not None:
            element.text = "".join(element._text_parts) if element._text_parts else None
            element._text_parts = None

    def text(data: str) -> None:
        if stack and stack[-1]._text_parts is not None:
            stack[-1]._text_parts.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(data, True)
    return roots[0]
