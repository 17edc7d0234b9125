"""The papers behind the two datasets, as BibTeX: read by the builders and by the cards (which
know no dataset module)."""

X_INSTRUCTION = """\
@inproceedings{li-etal-2024-x-instruction,
  title = "X-Instruction: Aligning Language Model in Low-resource Languages with Self-curated Cross-lingual Instructions",
  author = "Li, Chong and Yang, Wen and Zhang, Jiajun and Lu, Jinliang and Wang, Shaonan and Zong, Chengqing",
  booktitle = "Findings of the Association for Computational Linguistics: ACL 2024",
  year = "2024",
  url = "https://arxiv.org/abs/2405.19744",
}"""

PLUG = """\
@inproceedings{zhang-etal-2024-plug,
  title = "{PLUG}: Leveraging Pivot Language in Cross-Lingual Instruction Tuning",
  author = "Zhang, Zhihan and Lee, Dong-Ho and Fang, Yuwei and Yu, Wenhao and Jia, Mengzhao and Jiang, Meng and Barbieri, Francesco",
  booktitle = "Proceedings of the 62nd Annual Meeting of the Association for Computational Linguistics (Volume 1: Long Papers)",
  year = "2024",
  url = "https://arxiv.org/abs/2311.08711",
}"""

BY_KEY = {"x-instruction": X_INSTRUCTION, "plug": PLUG}
