from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
