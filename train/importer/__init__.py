"""Bring your own pipeline: import a fitted scikit-learn pipeline someone
already has, convert it with the parity gate and publish it (run.py).

    load.py       the pipeline file and the sample; what is refused, in one line
    supported.py  every step class the import converts (docs/import.md's table)
    convert.py    pipeline + sample -> ONNX graph (double precision, one input per column)
    dictvec.py    a DictVectorizer as one input per key
    converters.py the skl2onnx converters swapped in while converting
    trees.py      tree ensembles that split exactly as sklearn does
"""
