import Archive
print("archive-tool")
