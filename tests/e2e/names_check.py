# Checks for names.sh: what stoke wrote holds names as base/display_name.h shows them (valid UTF-8, one line each)
# and gives the file system's bytes back. The inverse is written here again from the documented scheme, so the
# test does not trust stoke's own.
#
# usage: names_check.py CHECK ARGS... [:: CHECK ARGS...]...   (paths arrive as bytes through os.fsencode); every
# check runs, each failure is one line, and the exit status is 1 if any failed.
import json
import os
import re
import struct
import sys


def unescape(text):
    def one(m):
        e = m.group(0)
        return {"\\\\": b"\\", "\\n": b"\n", "\\t": b"\t", "\\r": b"\r"}.get(e) or bytes([int(e[2:], 16)])

    out, at = b"", 0
    for m in re.finditer(r"\\\\|\\n|\\t|\\r|\\x[0-9A-Fa-f]{2}", text):
        out += text[at:m.start()].encode("utf-8") + one(m)
        at = m.end()
    return out + text[at:].encode("utf-8")


class Failed(Exception):
    pass


def utf8(path):
    raw = open(path, "rb").read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Failed(f"{os.fsdecode(path)!a} is not valid UTF-8: {e}")


def files_under(root):  # every file below root, as bytes relative to root
    out = set()
    for d, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def run(check, args):
    if check == "utf8":  # FILE...: each is valid UTF-8 text
        for f in args:
            utf8(f)
    elif check == "json":  # DIR: every *.json below DIR parses as UTF-8 JSON
        found = 0
        for d, _, names in os.walk(args[0]):
            for n in names:
                if n.endswith(b".json"):
                    json.loads(utf8(os.path.join(d, n)))
                    found += 1
        if found < 3:
            raise Failed(f"only {found} JSON files")
    elif check == "config":  # RUNDIR DATA CLASS...: config.json shows the classes and --data escaped, and they read back
        c = json.loads(utf8(os.path.join(args[0], b"config.json")))
        if [unescape(x) for x in c["classes"]] != args[2:]:
            raise Failed(f"classes {c['classes']!a} do not read back to {args[2:]!a}")
        if unescape(c["data"]) != args[1] or "\\x" not in c["data"]:
            raise Failed(f"data {c['data']!a} is not {args[1]!a} escaped")
    elif check == "train_files":  # RUNDIR DATA: one escaped name a line, reading back to exactly the images of DATA
        text = utf8(os.path.join(args[0], b"train_files.txt"))
        names = {unescape(line) for line in text.split("\n") if line}
        if names != {f for f in files_under(args[1]) if f.endswith(b".jpeg")} or len(text.split("\n")) != len(names) + 1:
            raise Failed(f"train_files.txt does not name the files of the data folder: {text!a}")
    elif check == "left_out":  # RUNDIR: "REASON<tab>PATH" lines, each PATH giving the bytes of a file that exists
        lines = utf8(os.path.join(args[0], b"left_out.txt")).splitlines()
        if not lines or not all(os.path.isfile(unescape(line.split("\t", 1)[1])) for line in lines):
            raise Failed(f"left_out.txt names no file that exists: {lines!a}")
    elif check == "quarantine":  # RUNDIR: "PATH<tab>WHAT: WHY" lines, each PATH giving the bytes of a file that exists
        lines = utf8(os.path.join(args[0], b"quarantine.txt")).splitlines()
        if not lines or not all(os.path.isfile(unescape(line.split("\t", 1)[0])) for line in lines):
            raise Failed(f"quarantine.txt names no file that exists: {lines!a}")
    elif check == "predict_json":  # OUT IMAGE...: one JSON line per image, in order, its path giving the bytes again
        lines = [json.loads(line) for line in utf8(args[0]).splitlines()]
        if [unescape(j["path"]) for j in lines] != args[1:]:
            raise Failed(f"paths {[j['path'] for j in lines]!a} are not the images {args[1:]!a}")
        if any(unescape(j["class"]) not in [unescape(k) for k in j["probabilities"]] for j in lines):
            raise Failed("a predicted class is not among the probabilities' classes")
    elif check == "predict_text":  # OUT IMAGE...: "PATH: CLASS P%" lines, PATH giving the bytes again
        lines = utf8(args[0]).splitlines()
        if [unescape(line.rsplit(": ", 1)[0]) for line in lines] != args[1:]:
            raise Failed(f"lines {lines!a} do not name the images {args[1:]!a}")
    elif check == "export":  # FILE CLASS...: the safetensors metadata names the classes escaped
        b = open(args[0], "rb").read()
        head = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]].decode("utf-8"))
        if [unescape(x) for x in json.loads(head["__metadata__"]["classes"])] != args[1:]:
            raise Failed(f"export's classes {head['__metadata__']['classes']!a}")
    else:
        raise Failed(f"unknown check {check}")


def main():
    argv, failed = [os.fsencode(a) for a in sys.argv[1:]], False
    while argv:
        end = argv.index(b"::") if b"::" in argv else len(argv)
        check, args, argv = argv[0].decode(), argv[1:end], argv[end + 1:]
        try:
            run(check, args)
        except Exception as e:  # a file that does not parse fails its check too
            print(f"FAIL: {check}: {e}")
            failed = True
    sys.exit(1 if failed else 0)


main()
