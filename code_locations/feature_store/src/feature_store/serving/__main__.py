from feature_store.serving.server import main

main()
